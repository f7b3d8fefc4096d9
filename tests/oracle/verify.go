package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

// verifyRequest asks IsRunningImageAllowed about one image and its signatures. The
// oracle serves them from a registry of its own on loopback, as a node meets them: the
// manifest under the logical reference's tag or digest, the simple-signing signatures
// from a lookaside store, the sigstore signatures as the layers of the `sha256-<hex>.sig`
// attachment; registries.conf sends the logical registry there and registries.d enables
// both stores. The verdict is that of the real docker transport and signature package.
type verifyRequest struct {
	VerifyPolicy     string          `json:"verify_policy,omitempty"`
	VerifyReference  string          `json:"verify_reference,omitempty"`
	VerifyManifest   string          `json:"verify_manifest_b64,omitempty"`
	VerifyMediaType  string          `json:"verify_media_type,omitempty"`
	VerifySimple     []string        `json:"verify_simple_b64,omitempty"`
	VerifySigstore   []sigstoreLayer `json:"verify_sigstore,omitempty"`
	VerifyNoSigstore bool            `json:"verify_no_attachments,omitempty"`
}

// sigstoreLayer is one layer of the attachment manifest.
type sigstoreLayer struct {
	MediaType   string            `json:"media_type"`
	Payload     string            `json:"payload_b64"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type blob struct {
	mediaType string
	data      []byte
}

// signedRegistry is the loopback registry and lookaside server of one request.
type signedRegistry struct {
	mu        sync.Mutex
	manifests map[string]blob // tag or digest -> manifest
	blobs     map[string][]byte
	lookaside map[string][]byte // "sha256=<hex>/signature-N" -> blob
	requests  []string
}

func (s *signedRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+r.URL.Path)
	s.mu.Unlock()
	path := r.URL.Path
	switch {
	case path == "/v2/" || path == "/v2":
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		w.WriteHeader(http.StatusOK)
		return
	case strings.HasPrefix(path, "/lookaside/"):
		at := strings.LastIndex(path, "@")
		if at >= 0 {
			if data, ok := s.lookaside[path[at+1:]]; ok {
				w.Header().Set("Content-Type", "application/octet-stream")
				_, _ = w.Write(data)
				return
			}
		}
		http.NotFound(w, r)
		return
	case strings.HasPrefix(path, "/v2/"):
		if i := strings.LastIndex(path, "/manifests/"); i >= 0 {
			key := path[i+len("/manifests/"):]
			if m, ok := s.manifests[key]; ok {
				w.Header().Set("Content-Type", m.mediaType)
				w.Header().Set("Docker-Content-Digest", digest.FromBytes(m.data).String())
				if r.Method != http.MethodHead {
					_, _ = w.Write(m.data)
				}
				return
			}
			writeRegistryError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown")
			return
		}
		if i := strings.LastIndex(path, "/blobs/"); i >= 0 {
			if data, ok := s.blobs[path[i+len("/blobs/"):]]; ok {
				w.Header().Set("Content-Type", "application/octet-stream")
				if r.Method != http.MethodHead {
					_, _ = w.Write(data)
				}
				return
			}
			writeRegistryError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
			return
		}
	}
	http.NotFound(w, r)
}

func writeRegistryError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]string{{"code": code, "message": message}},
	})
}

func attachmentManifest(layers []sigstoreLayer, blobs map[string][]byte) ([]byte, error) {
	config := []byte("{}")
	configDigest := digest.FromBytes(config)
	blobs[configDigest.String()] = config
	descriptors := []map[string]any{}
	for _, layer := range layers {
		payload, err := base64.StdEncoding.DecodeString(layer.Payload)
		if err != nil {
			return nil, fmt.Errorf("payload_b64: %w", err)
		}
		d := digest.FromBytes(payload)
		blobs[d.String()] = payload
		descriptor := map[string]any{"mediaType": layer.MediaType, "size": len(payload), "digest": d.String()}
		if len(layer.Annotations) > 0 {
			descriptor["annotations"] = layer.Annotations
		}
		descriptors = append(descriptors, descriptor)
	}
	return json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json",
			"size": len(config), "digest": configDigest.String()},
		"layers": descriptors,
	})
}

func verify(req *verifyRequest) (answer, error) {
	if req.VerifyReference == "" || req.VerifyManifest == "" {
		return nil, errors.New("verify needs verify_reference and verify_manifest_b64")
	}
	parsed, err := signature.NewPolicyFromBytes([]byte(req.VerifyPolicy))
	if err != nil {
		return answer{"parse_error": err.Error()}, nil
	}
	ref, err := docker.ParseReference("//" + req.VerifyReference)
	if err != nil {
		return answer{"reference_error": err.Error()}, nil
	}
	manifestBytes, err := base64.StdEncoding.DecodeString(req.VerifyManifest)
	if err != nil {
		return nil, fmt.Errorf("verify_manifest_b64: %w", err)
	}
	mediaType := req.VerifyMediaType
	if mediaType == "" {
		mediaType = "application/vnd.oci.image.manifest.v1+json"
	}
	manifestDigest := digest.FromBytes(manifestBytes)
	registry := &signedRegistry{
		manifests: map[string]blob{manifestDigest.String(): {mediaType, manifestBytes}},
		blobs:     map[string][]byte{},
		lookaside: map[string][]byte{},
	}
	named := ref.DockerReference()
	if tagged, ok := named.(interface{ Tag() string }); ok {
		registry.manifests[tagged.Tag()] = blob{mediaType, manifestBytes}
	}
	for i, text := range req.VerifySimple {
		data, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			return nil, fmt.Errorf("verify_simple_b64[%d]: %w", i, err)
		}
		registry.lookaside[fmt.Sprintf("%s=%s/signature-%d", manifestDigest.Algorithm(), manifestDigest.Encoded(), i+1)] = data
	}
	if req.VerifySigstore != nil {
		attachment, err := attachmentManifest(req.VerifySigstore, registry.blobs)
		if err != nil {
			return nil, err
		}
		tag := strings.Replace(manifestDigest.String(), ":", "-", 1) + ".sig"
		registry.manifests[tag] = blob{"application/vnd.oci.image.manifest.v1+json", attachment}
	}
	server := httptest.NewServer(registry)
	defer server.Close()
	host := strings.TrimPrefix(server.URL, "http://")

	dir, err := os.MkdirTemp("", "mirrorlab-oracle-verify-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	domain := strings.SplitN(named.Name(), "/", 2)[0]
	conf := filepath.Join(dir, "registries.conf")
	confText := fmt.Sprintf("[[registry]]\nprefix = %q\nlocation = %q\ninsecure = true\n", domain, host)
	registriesD := filepath.Join(dir, "registries.d")
	emptyDir := filepath.Join(dir, "empty")
	for _, d := range []string{registriesD, emptyDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, err
		}
	}
	attachments := !req.VerifyNoSigstore
	registriesDText := fmt.Sprintf("default-docker:\n  lookaside: %s/lookaside\n  use-sigstore-attachments: %t\n", server.URL, attachments)
	if err := os.WriteFile(conf, []byte(confText), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(registriesD, "default.yaml"), []byte(registriesDText), 0o600); err != nil {
		return nil, err
	}
	sys := &types.SystemContext{
		SystemRegistriesConfPath:    conf,
		SystemRegistriesConfDirPath: emptyDir,
		RegistriesDirPath:           registriesD,
		AuthFilePath:                filepath.Join(dir, "auth.json"),
		DockerPerHostCertDirPath:    emptyDir,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src, err := ref.NewImageSource(ctx, sys)
	if err != nil {
		return answer{"source_error": err.Error()}, nil
	}
	defer src.Close()
	pc, err := signature.NewPolicyContext(parsed)
	if err != nil {
		return nil, err
	}
	defer func() { _ = pc.Destroy() }()
	allowed, err := pc.IsRunningImageAllowed(ctx, image.UnparsedInstance(src, nil))
	out := answer{"allowed": allowed, "reason": "", "policy_error": false}
	if err != nil {
		out["reason"] = err.Error()
		var policyErr signature.PolicyRequirementError
		out["policy_error"] = errors.As(err, &policyErr)
	}
	registry.mu.Lock()
	out["requests"] = append([]string(nil), registry.requests...)
	registry.mu.Unlock()
	return out, nil
}
