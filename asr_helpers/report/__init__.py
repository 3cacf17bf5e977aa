"""Report wing: what notebooks 04 and 05 show a student and a grader.

``summary`` (reads run folders into tables), ``stream_summary`` (a streaming run's record and its
accuracy cost), ``figures`` (the report's plots), ``error_analysis``,
``checklist`` (the course's items, ticked from artifacts), ``widgets`` (interactive panels) and
``mic_widget`` (the microphone panel of a streaming model; its browser half is ``mic_widget.js``).

May import: every wing above except ``tools``.
"""
