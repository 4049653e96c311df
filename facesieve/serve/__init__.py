"""`facesieve serve`: the local review app over a run's report (serve/app.py).

It reads the report's data and page from facesieve/report/ and starts runs through
facesieve/pipeline.py; report/ imports nothing from here, so the report stays a leaf.
"""
