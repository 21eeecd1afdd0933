"""The PyTorch reference formulations (optional: `pip install -e ".[torch]"`).

Independent PyTorch re-implementations written from the equations, with module names that
follow the official state dicts, so official checkpoints load as they are: `stylegan2`
(generator), `stylemask` (mask network and the training objective), `irse` (ArcFace IR-SE and
e4e), `deca` (the DECA encoder and its kornia-0.4.1 crop), `flame`. Used by the parity tests,
the benchmarks and `stylemask compare` (`compare.py`, which imports torch only when it runs).
The core library never imports this package's torch modules.
"""
