"""Memory over a simulated 24-hour run at a 1 s interval (fake clock, 16 fake devices).

Target: resident memory grows by less than 5 MB. Checkpoints (every 60 s) and one epoch per
hour are written to a run log in a temporary directory, as in a real run.
"""

from __future__ import annotations

import gc
import tempfile

from _util import rss_bytes

from carbontrack import Tracker, make_settings
from carbontrack.testing import FakeClock, FakeDevice, FakeHardware

HOURS = 24


def main() -> None:
    clock = FakeClock()
    hw = FakeHardware([FakeDevice(f"d{i}", watts=50.0) for i in range(16)], clock=clock)
    with tempfile.TemporaryDirectory() as logs:
        # A long real interval: the simulation drives every tick itself.
        settings = make_settings(
            verbose=0, log_dir=logs, interval_s=3600.0, checkpoint_s=60.0, epochs=HOURS
        )
        tracker = Tracker(settings, plugins=[hw], autoload=False, clock=clock)
        tracker.start()
        sampler = tracker._sampler  # the benchmark drives the engine directly
        warmup_ticks = 3600
        for _ in range(warmup_ticks):
            clock.advance(1.0)
            sampler.tick()
        gc.collect()
        before = rss_bytes()
        tracker.epoch_start()
        for second in range(warmup_ticks, HOURS * 3600):
            clock.advance(1.0)
            sampler.tick()
            if second % 3600 == 0:
                tracker.epoch_end()
                tracker.epoch_start()
        tracker.epoch_end()
        gc.collect()
        after = rss_bytes()
        report = tracker.stop()
    growth_mb = (after - before) / 2**20
    print(
        f"simulated {HOURS} h at 1 s ({HOURS * 3600} ticks, 16 devices, "
        f"{len(report.epochs)} epochs): RSS {before / 2**20:.1f} MB -> {after / 2**20:.1f} MB, "
        f"growth {growth_mb:.2f} MB (target < 5 MB)"
    )
    print(f"energy {report.energy_j:.0f} J vs truth {hw.true_energy_j:.0f} J")


if __name__ == "__main__":
    main()
