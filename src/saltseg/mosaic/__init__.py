"""Mosaics: assemble tiles into their sections (assemble), the winners' vertical-mask
post-processing (postprocess), and pictures of a mosaic for a person to check (draw)."""
