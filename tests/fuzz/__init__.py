"""Fuzz harnesses for every decoder that takes bytes from outside (see README.md here).

Each ``fuzz_<name>.py`` module defines ``ALLOWED`` (the typed errors that input may cause),
``one_input(data)`` (catches ``ALLOWED`` and returns; anything else that escapes is a bug)
and ``seeds()`` (valid encodings made by the project's own builders, for the corpus).
"""
