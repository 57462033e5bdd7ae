"""The Textual app and the command line. Presentation only: domain logic lives in engine/, pricing/, data/."""
