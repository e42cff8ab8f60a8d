"""The peer scripts import their own library (fastai, surprise...), absent from the project
venv: pytest (with --doctest-modules) collects only the helpers and their tests here."""

collect_ignore = ["peer_fastai.py", "peer_implicit.py", "peer_keras_rs.py", "peer_surprise.py"]
