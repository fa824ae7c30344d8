"""Dataset validation and loading with no Django import."""
