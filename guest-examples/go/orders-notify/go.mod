module example.com/orders-notify

go 1.24

require github.com/weir-rs/weir/sdk/go v0.1.0
