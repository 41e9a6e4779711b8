"""Page sections: a page that shows several independent things delegates each to a ``render()`` here."""
