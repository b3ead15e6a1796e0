"""Engine: state, parameter table, voice allocation, events and the block loop."""
