"""Watching a deployed project: its functions' /metrics as figures (snapshot), the recent records
of its error stream (errors), a terminal view (``graphpack top``) and a live graph page
(``graphpack ui``)."""
