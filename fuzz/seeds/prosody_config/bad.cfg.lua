Component "a.example"
  component_secret = 0x10
  foo = { { { { } } } }
