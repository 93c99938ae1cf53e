"""BERMUDA: batch alignment with an autoencoder and MMD between MetaNeighbor-matched clusters."""

from ._model import BERMUDA, DEFAULT, FAITHFUL, BERMUDAConfig
from ._module import BERMUDAModule

__all__ = ["BERMUDA", "DEFAULT", "FAITHFUL", "BERMUDAConfig", "BERMUDAModule"]
