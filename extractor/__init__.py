"""The extractor service: crawls Twitch Helix and lands one snapshot file per crawl."""
