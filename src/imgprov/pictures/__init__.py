"""Pictures for people: `search` draws the vote map and the matches' roles over a query, `compare` the
edits' heatmap and mask, `web` the web page's data URLs and thumbnails; `raster` holds the colour map
and the one PNG/JPEG encoder and writer they share."""
