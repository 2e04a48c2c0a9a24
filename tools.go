//go:build tools

// Package tools pins the modules the project depends on before every
// package that imports them exists, so parallel work shares one go.mod.
package tools

import (
	_ "filippo.io/age"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/hashicorp/memberlist"
	_ "github.com/jackc/pgx/v5"
	_ "github.com/miekg/dns"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "go.etcd.io/etcd/client/v3"
	_ "go.etcd.io/etcd/server/v3/embed"
	_ "go.yaml.in/yaml/v3"
	_ "golang.org/x/crypto/ssh"
)
