Component "a.example" component_secret = [[long
string]] --[==[ comment ]==]
modules_enabled = { "ping"; "pep", }
local x = 1 + 2
