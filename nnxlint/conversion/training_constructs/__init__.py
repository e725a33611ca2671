"""Constructs of training code, one small module each (as ``constructs/`` holds those of
modules): ``training.py`` finds the roles and rewrites the statements, and hands a
construct it does not know itself to the module here that does."""
