"""Cut the faces of the Kaggle "Face Mask Detection" photos into train/valid/test crop folders.

    python split.py <images dir> <train.csv> 80 15 5          # percentages, summing to 100
    python split.py <images dir> <train.csv> 0.8 0.15 0.05    # or fractions, summing to 1

writes `data/{train,valid,test}/{mask,no-mask}/` crops and `data/manifest.csv`; `--help` lists the
options. The work is done by `facemask.split` (also `python -m facemask.split`), whose docstring
gives the rules and why.
"""

import sys

from facemask.split import main

if __name__ == "__main__":
    sys.exit(main())
