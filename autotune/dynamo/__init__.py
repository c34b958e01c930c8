"""Running a real NVIDIA Dynamo 1.6.1 stack (frontend + KV router + mocker workers) on loopback.

Kept free of heavy imports: ``model_dir`` also runs as a script under the Dynamo venv's python.
"""
