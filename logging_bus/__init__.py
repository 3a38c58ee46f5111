"""The log bus: sources append to a durable store, everything downstream reads by cursor."""
