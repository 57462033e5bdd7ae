"""Running a job to its end: the session that owns the engine and the orchestrator (session.py) and
load runs, from the user's settings to stored levels (load.py)."""
