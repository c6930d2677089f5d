"""Landing-zone ingestion shared by every domain: streaming readers, routing, archive, sensor."""
