package main

import (
	"errors"
	"os"
	"path/filepath"

	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"
)

type sourcesRequest struct {
	// Conf is registries.conf text, written to a private file; ConfPath names a file instead.
	Conf       *string  `json:"conf,omitempty"`
	ConfPath   string   `json:"conf_path,omitempty"`
	DropInDirs []string `json:"drop_in_dirs,omitempty"`
	Refs       []string `json:"refs,omitempty"`
}

type pullSource struct {
	Reference      string `json:"reference"`
	Mirror         bool   `json:"mirror"`
	Insecure       bool   `json:"insecure"`
	PullFromMirror string `json:"pull_from_mirror"`
	NamespaceProxy string `json:"namespace_proxy,omitempty"`
	Blocked        bool   `json:"blocked"`
	BlockedBy      string `json:"blocked_by,omitempty"`
	// Error is set when the transport refuses this source before contacting it
	// (the blocked error, or a physical reference it cannot use).
	Error string `json:"error,omitempty"`
}

type refSources struct {
	Input     string       `json:"input"`
	Reference string       `json:"reference,omitempty"`
	Registry  *string      `json:"registry"`
	Sources   []pullSource `json:"sources"`
	Error     string       `json:"error,omitempty"`
}

// systemContext points sysregistriesv2 at exactly the given files and nothing else.
func systemContext(req *sourcesRequest) (*types.SystemContext, func(), error) {
	work, err := os.MkdirTemp("", "mirrorlab-oracle-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { _ = os.RemoveAll(work) }
	sys := &types.SystemContext{SystemRegistriesConfPath: req.ConfPath}
	if req.Conf != nil {
		sys.SystemRegistriesConfPath = filepath.Join(work, "registries.conf")
		if err := os.WriteFile(sys.SystemRegistriesConfPath, []byte(*req.Conf), 0o600); err != nil {
			cleanup()
			return nil, nil, err
		}
	}
	if sys.SystemRegistriesConfPath == "" {
		cleanup()
		return nil, nil, errors.New("sources needs conf or conf_path")
	}
	switch len(req.DropInDirs) {
	case 0:
		// A directory that does not exist: no drop-in of this machine is read.
		sys.SystemRegistriesConfDirPath = filepath.Join(work, "no-drop-ins")
	case 1:
		sys.SystemRegistriesConfDirPath = req.DropInDirs[0]
	default:
		cleanup()
		return nil, nil, errors.New("SystemContext takes one drop-in directory")
	}
	return sys, cleanup, nil
}

// sources lists the pull sources of each reference as docker's newImageSource builds
// them: sysregistriesv2.FindRegistry on the logical name, PullSourcesFromReference, then
// per source the checks newDockerClient makes before any contact (FindRegistry on the
// physical name: blocked).
func sources(req *sourcesRequest) (answer, error) {
	sys, cleanup, err := systemContext(req)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	sysregistriesv2.InvalidateCache()
	defer sysregistriesv2.InvalidateCache()

	if _, err := sysregistriesv2.TryUpdatingCache(sys); err != nil {
		return answer{"config_error": err.Error(), "results": []refSources{}}, nil
	}
	results := make([]refSources, 0, len(req.Refs))
	for _, text := range req.Refs {
		results = append(results, sourcesFor(sys, text))
	}
	return answer{"results": results}, nil
}

func sourcesFor(sys *types.SystemContext, text string) refSources {
	result := refSources{Input: text, Sources: []pullSource{}}
	imageRef, err := docker.ParseReference("//" + text)
	if err != nil {
		result.Error = err.Error()
		return result
	}
	named := imageRef.DockerReference()
	result.Reference = named.String()
	registry, err := sysregistriesv2.FindRegistry(sys, named.Name())
	if err != nil {
		result.Error = "loading registries configuration: " + err.Error()
		return result
	}
	if registry == nil {
		registry = &sysregistriesv2.Registry{
			Endpoint: sysregistriesv2.Endpoint{Location: named.String()},
			Prefix:   named.String(),
		}
	} else {
		prefix := registry.Prefix
		result.Registry = &prefix
	}
	pulls, err := registry.PullSourcesFromReference(named)
	if err != nil {
		result.Error = err.Error()
		return result
	}
	last := len(pulls) - 1
	for i, pull := range pulls {
		source := pullSource{
			Reference:      pull.Reference.String(),
			Mirror:         i != last,
			Insecure:       pull.Endpoint.Insecure,
			PullFromMirror: pull.Endpoint.PullFromMirror,
			NamespaceProxy: pull.Endpoint.NamespaceProxy,
		}
		if _, err := docker.NewReference(pull.Reference); err != nil {
			source.Error = err.Error()
		} else if governing, err := sysregistriesv2.FindRegistry(sys, pull.Reference.Name()); err != nil {
			source.Error = "loading registries: " + err.Error()
		} else if governing != nil && governing.Blocked {
			source.Blocked = true
			source.BlockedBy = governing.Prefix
			source.Error = "registry " + governing.Prefix + " is blocked in one of " +
				sysregistriesv2.ConfigurationSourceDescription(sys)
		}
		result.Sources = append(result.Sources, source)
	}
	return result
}
