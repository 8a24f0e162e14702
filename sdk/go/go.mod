module github.com/weir-rs/weir/sdk/go

go 1.24
