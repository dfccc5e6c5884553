-- Prosody config
admins = { "admin@example.org" }
VirtualHost "example.org"
Component "irc.example.org"
    component_secret = "s3cret"
Component "muc.example.org" "muc"
Component "off.example.org"
    component_secret = "x"
    enabled = false
Include "conf.d/*.cfg.lua"
