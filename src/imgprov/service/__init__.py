"""The imgprov HTTP service and web page: `imgprov serve --db DIR`.

Importing this package loads nothing heavy: FastAPI and uvicorn (the `serve` extra) are imported
by `imgprov.service.app` and `imgprov.service.server` only, so the command line works without them.
"""
