package main

import (
	"os/user"
	"strconv"
)

func postgresUID() int {
	u, err := user.Lookup("postgres")
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(u.Uid)
	return n
}

func postgresGID() int {
	u, err := user.Lookup("postgres")
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(u.Gid)
	return n
}
