"""Files shipped with edgeopt."""

from pathlib import Path

# generic product titles: calibration for text models when no --calib is given, and probe texts
CALIBRATION_TITLES = Path(__file__).with_name("calibration_titles.txt")
