"""A web app for a trained model: ``python -m brain_mtl app --ckpt_path last.ckpt`` (needs ``pip install -e ".[app]"``).

It starts a local Streamlit server (127.0.0.1 by default) whose page lets a person upload scans (or pick synthetic
examples), see each one with its predicted tumour outline and filled mask, the predicted class with all four
probabilities, the tumour area and optionally a Grad-CAM heat map; change the mask threshold, the no-tumour gate and
flip test-time augmentation; and download the mask, the overlay and a CSV of all results. See ``docs/app.md``.

A thin face over :mod:`brain_mtl.inference`: predictions are :class:`~brain_mtl.inference.Predictor`'s, the files
are :class:`~brain_mtl.inference.OutputWriter`'s. Layout:

- ``launch``: the command line (jsonargparse) that starts ``streamlit run`` on the page;
- ``model``: the network loaded once (checkpoint or ONNX), the facts the page shows, the page's settings;
- ``uploads``: reading and checking uploaded bytes, the bundled example scans;
- ``service``: framework-free logic the page calls (predicting a scan, drawing, the result files), over the two;
- ``onnx_model``: an ONNX file from ``python -m brain_mtl export`` as a network the predictor runs (ONNX Runtime);
- ``page``: the Streamlit page.

Importing this package imports neither Streamlit nor PyTorch.
"""

from __future__ import annotations

from brain_mtl.app.launch import app_main

__all__ = ["app_main"]
