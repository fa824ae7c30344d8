"""One reader per dataset format; each returns a ParsedDataset or raises DatasetError."""
