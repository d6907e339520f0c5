"""The `paxline` command: `main` builds the app; `jobs` and `stack` add their sub-commands."""
