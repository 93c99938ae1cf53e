"""The machinery of the ``sctransfer`` command line (:mod:`sctransfer.cli` declares the commands).

- :mod:`._base`: exit codes and errors, the environment a batch system needs, and the console;
- :mod:`._files`: reading h5ad/h5mu inputs and writing every output atomically;
- :mod:`._options`: options generated from the verbs' signatures and numpydoc docstrings.
"""
