"""Training recipes: plain setup -> main -> fit functions, one file per recipe."""
