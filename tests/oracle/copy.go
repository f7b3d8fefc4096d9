package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/directory"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

type copyRequest struct {
	Source             string `json:"source,omitempty"`
	DestDir            string `json:"dest_dir,omitempty"`
	RegistriesConfPath string `json:"registries_conf_path,omitempty"`
	RegistriesConfDir  string `json:"registries_conf_dir,omitempty"`
	PolicyPath         string `json:"policy_path,omitempty"`
	CertsDir           string `json:"certs_dir,omitempty"`
	AuthFile           string `json:"auth_file,omitempty"`
	TimeoutSeconds     int    `json:"timeout_seconds,omitempty"`
}

// copyImage runs copy.Image from docker://SOURCE into dir:DEST_DIR, as skopeo copy does,
// and reports the outcome and the library's debug lines about sources and blobs.
func copyImage(req *copyRequest) (answer, error) {
	if req.Source == "" || req.DestDir == "" || req.RegistriesConfPath == "" || req.PolicyPath == "" {
		return nil, errors.New("copy needs source, dest_dir, registries_conf_path and policy_path")
	}
	srcRef, err := docker.ParseReference("//" + req.Source)
	if err != nil {
		return answer{"copied": false, "copy_error": err.Error()}, nil
	}
	destRef, err := directory.NewReference(req.DestDir)
	if err != nil {
		return nil, err
	}
	policyValue, err := signature.NewPolicyFromFile(req.PolicyPath)
	if err != nil {
		return answer{"copied": false, "copy_error": err.Error()}, nil
	}
	pc, err := signature.NewPolicyContext(policyValue)
	if err != nil {
		return nil, err
	}
	defer func() { _ = pc.Destroy() }()

	dropIns := req.RegistriesConfDir
	if dropIns == "" {
		dropIns = filepath.Join(filepath.Dir(req.RegistriesConfPath), "mirrorlab-oracle-no-drop-ins")
	}
	sys := &types.SystemContext{
		SystemRegistriesConfPath:    req.RegistriesConfPath,
		SystemRegistriesConfDirPath: dropIns,
		DockerPerHostCertDirPath:    req.CertsDir,
		AuthFilePath:                req.AuthFile,
		DockerLogMirrorChoice:       true,
	}
	if req.AuthFile == "" {
		sys.AuthFilePath = filepath.Join(os.TempDir(), "mirrorlab-oracle-no-auth.json")
	}
	timeout := time.Duration(req.TimeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	var logs bytes.Buffer
	logrus.SetOutput(&logs)
	logrus.SetLevel(logrus.DebugLevel)
	defer func() {
		logrus.SetOutput(io.Discard)
		logrus.SetLevel(logrus.InfoLevel)
	}()

	manifest, err := copy.Image(ctx, pc, destRef, srcRef, &copy.Options{SourceCtx: sys, ReportWriter: io.Discard})
	lines := []string{}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "Trying to access") || strings.Contains(line, "Accessing") ||
			strings.Contains(line, "GET ") || strings.Contains(line, "HEAD ") ||
			strings.Contains(line, "mirror") || strings.Contains(line, "fallback") {
			lines = append(lines, line)
		}
	}
	out := answer{"copied": err == nil, "log": lines}
	if err != nil {
		out["copy_error"] = err.Error()
	} else {
		out["manifest_digest"] = digest.FromBytes(manifest).String()
	}
	return out, nil
}
