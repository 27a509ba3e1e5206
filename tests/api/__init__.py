"""The HTTP API over real HTTPS (uvicorn, as `python -m api` serves it) against the real Temporal
dev server and the real VideoGenerationWorkflow; only the provider is a stand-in, at the activity
boundary, so each test decides when a provider task ends. One module per section of the API;
the shared server and worker are in conftest.py, the requests and readings in tests/helpers/api.py.
"""
