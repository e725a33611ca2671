"""A small NNX project split over files, for the cross-file recall tests (run it: python main.py)."""
from .models import Classifier as Classifier
