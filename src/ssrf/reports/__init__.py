"""Tables and reports built from prepared-data metadata and run folders; never trains."""
