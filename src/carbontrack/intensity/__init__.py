"""Carbon intensity and location: where the machine is and how clean its electricity is."""
