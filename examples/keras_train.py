"""Keras 3 training measured by carbontrack: python examples/keras_train.py

Needs keras and a backend (pip install "carbontrack[keras]" torch). Runs on CPU in seconds;
set EPOCHS in the environment to train longer.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np

from carbontrack.integrations.keras import CarbonTrackCallback

rng = np.random.default_rng(0)
x = rng.normal(size=(2048, 16)).astype("float32")
y = (x.sum(axis=1, keepdims=True) > 0).astype("float32")

model = keras.Sequential(
    [keras.Input((16,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)]
)
model.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy(from_logits=True))

carbon = CarbonTrackCallback(pue="none")  # track()'s options; epochs come from fit()
with carbon:  # ends the run even if fit() raises (Keras has no hook for that)
    history = model.fit(
        x,
        y,
        epochs=int(os.environ.get("EPOCHS", "3")),
        validation_split=0.2,
        callbacks=[carbon],
        verbose=0,
    )

print(history.history["carbontrack/energy_kwh"])  # the figures are in Keras's own history
print(f"{carbon.report.energy_kwh:.3g} kWh, {carbon.report.co2eq_g:.3g} gCO2eq")
