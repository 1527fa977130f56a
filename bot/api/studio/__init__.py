"""Studio: the operator's web pages, beside the JSON API and calling the same services."""
