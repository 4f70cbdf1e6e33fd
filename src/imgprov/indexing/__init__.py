"""Index stage: image files, folders or URL listings into a store (`pipeline`), on this machine's
threads or on a Ray cluster (`ray`)."""
