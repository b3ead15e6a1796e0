"""Input/output: MIDI files, audio files, live audio and MIDI."""
