"""Stages, one module each; each reads its inputs from and writes its outputs to the run layout."""
