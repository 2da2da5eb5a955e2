"""The MLflow "model from code" file of a logged churnlens model.

:func:`churnlens._tracking.log_training_run` logs this file as the pyfunc's
``python_model``: MLflow copies it into the model and runs it when the model is
loaded, instead of unpickling a Python object with cloudpickle. The trained model
itself is the ``bundle`` artifact, whose SHA-256 digest is checked before it is read.

Running this file registers the model with MLflow (``mlflow.models.set_model``): that
is its purpose, so nothing in churnlens imports it.
"""

from __future__ import annotations

import mlflow

from churnlens._tracking import ChurnlensPyfunc

mlflow.models.set_model(ChurnlensPyfunc())
