"""What the ``lodevec`` command prints and where it finds its database (stdlib only, so
``lodevec --help`` stays fast): ``project`` (the ``.lodevec`` folder, found as git finds
``.git``), ``output`` (grep-shaped hits, colour), ``pipes`` (closed stdout, stdin)."""
