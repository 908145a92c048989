"""Training-time pieces of our methods that subclass torch, peft or transformers classes.

They live outside `pipeline.methods` so that registering the method configs imports none of those libraries;
each method imports its piece from here when it first wraps or trains a model.
"""
