package main

import (
	"errors"
	"runtime"
	"runtime/debug"
)

// pinned names the modules whose behaviour the oracle reports.
var pinned = []string{
	"go.podman.io/image/v5",
	"go.podman.io/storage",
	"github.com/openshift/runtime-utils",
	"github.com/containers/image/v5",
	"github.com/openshift/api",
	"github.com/BurntSushi/toml",
}

// versions reads the linked module versions from debug.ReadBuildInfo.
func versions() (answer, error) {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return nil, errors.New("no build information in the binary")
	}
	modules := map[string]string{}
	for _, dep := range info.Deps {
		for _, name := range pinned {
			if dep.Path == name {
				version := dep.Version
				if dep.Replace != nil {
					version = dep.Replace.Path + "@" + dep.Replace.Version
				}
				modules[name] = version
			}
		}
	}
	tags := ""
	cgo := ""
	for _, setting := range info.Settings {
		switch setting.Key {
		case "-tags":
			tags = setting.Value
		case "CGO_ENABLED":
			cgo = setting.Value
		}
	}
	return answer{"go": runtime.Version(), "modules": modules, "tags": tags, "cgo": cgo}, nil
}
