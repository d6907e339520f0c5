"""The exactly-once file sink (issue 18, in progress): so far only its two-phase commit, as a
pure state machine (:mod:`pipeline.files.commit`). Not wired into the job API or the worker."""
