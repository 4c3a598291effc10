"""Is the `train` extra installed? Asked before anything imports torch.

The project wheel carries both halves, so the service image (serve extra only, no torch) has an
`mlp-train` script too. Without this check it would end in an ImportError traceback; with it,
in one line that says what to install. Standard library only, so the check itself cannot fail
the same way.
"""

import importlib.util

# Import names of pyproject.toml's `train` extra (tests/training/test_dependencies.py keeps
# the two lists equal).
TRAIN_MODULES = (
    "torch", "onnx", "onnxscript", "onnxruntime", "matplotlib", "tqdm", "optuna", "psycopg",
)


def missing_modules(names: tuple[str, ...] = TRAIN_MODULES) -> list[str]:
    """The names that cannot be imported; found without importing them, so this is fast."""
    return [name for name in names if importlib.util.find_spec(name) is None]


def missing_message(missing: list[str]) -> str:
    """One line: what is missing and the two ways to get it."""
    return (
        f"needs the training dependencies ({', '.join(missing)} not installed); install them "
        "with pip install 'mlp-serve[train]' or use the training image (training/Dockerfile)"
    )
