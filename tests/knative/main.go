// knative-check: checks rendered Knative manifests with Knative's own code and CRD schemas.
//
// Usage: knative-check FILE_OR_DIR...
//
// Every YAML document under the arguments is decoded strictly (unknown fields are errors)
// into the Knative Go type its apiVersion/kind names, defaulted with SetDefaults and checked
// with Validate (as Knative's admission webhook does on create). The same document is then
// checked against the CustomResourceDefinition shipped in the Go module that defines the type
// (its config/ directory, located with `go mod download -json <module>@<version compiled in>`),
// with the API server's own schema validator and pruning (fields the schema does not know are
// errors). Prints one "ok FILE KIND/NAME" line per document; exits 1 on any error.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"

	apiextensions "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"

	sourcesv1 "knative.dev/eventing/pkg/apis/sources/v1"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
)

// knativeObject is what every checked Knative type implements.
type knativeObject interface {
	apis.Defaultable
	apis.Validatable
}

// kindInfo: how to make the Go value of a kind, and which module ships its CRD.
type kindInfo struct {
	module string
	make   func() knativeObject
}

var kinds = map[string]kindInfo{
	"serving.knative.dev/v1/Service":    {"knative.dev/serving", func() knativeObject { return &servingv1.Service{} }},
	"sources.knative.dev/v1/PingSource": {"knative.dev/eventing", func() knativeObject { return &sourcesv1.PingSource{} }},
}

type crdKey struct{ group, version, kind string }

type crdSchema struct {
	file       string
	validator  validation.SchemaValidator
	structural *structuralschema.Structural
}

// moduleVersion: the version of a module compiled into this binary.
func moduleVersion(path string) (string, error) {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "", fmt.Errorf("no build info in the binary")
	}
	for _, dep := range info.Deps {
		if dep.Path == path {
			if dep.Replace != nil {
				dep = dep.Replace
			}
			return dep.Version, nil
		}
	}
	return "", fmt.Errorf("module %s is not compiled in", path)
}

// moduleDir: the module's source directory in the module cache (`go mod download -json`).
func moduleDir(path string) (string, error) {
	version, err := moduleVersion(path)
	if err != nil {
		return "", err
	}
	out, err := exec.Command("go", "mod", "download", "-json", path+"@"+version).Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %v", path, version, err)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return "", err
	}
	if info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %s", path, version, info.Error)
	}
	return info.Dir, nil
}

// loadCRDs: every CustomResourceDefinition under the module's config/ directory.
func loadCRDs(module string, into map[crdKey]*crdSchema) error {
	dir, err := moduleDir(module)
	if err != nil {
		return err
	}
	return filepath.Walk(filepath.Join(dir, "config"), func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, doc := range splitYAML(data) {
			var head struct{ Kind string }
			if yaml.Unmarshal(doc, &head) != nil || head.Kind != "CustomResourceDefinition" {
				continue
			}
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := yaml.UnmarshalStrict(doc, crd); err != nil {
				return fmt.Errorf("%s: %v", path, err)
			}
			for _, version := range crd.Spec.Versions {
				if version.Schema == nil || version.Schema.OpenAPIV3Schema == nil {
					continue
				}
				internal := &apiextensions.JSONSchemaProps{}
				if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(
					version.Schema.OpenAPIV3Schema, internal, nil); err != nil {
					return fmt.Errorf("%s: %v", path, err)
				}
				validator, _, err := validation.NewSchemaValidator(internal)
				if err != nil {
					return fmt.Errorf("%s: %v", path, err)
				}
				structural, err := structuralschema.NewStructural(internal)
				if err != nil {
					return fmt.Errorf("%s: %v", path, err)
				}
				into[crdKey{crd.Spec.Group, version.Name, crd.Spec.Names.Kind}] = &crdSchema{path, validator, structural}
			}
		}
		return nil
	})
}

func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	for _, part := range bytes.Split(append([]byte("\n"), data...), []byte("\n---")) {
		if len(bytes.TrimSpace(part)) > 0 {
			docs = append(docs, part)
		}
	}
	return docs
}

func files(args []string) ([]string, error) {
	var out []string
	for _, arg := range args {
		fi, err := os.Stat(arg)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			out = append(out, arg)
			continue
		}
		err = filepath.Walk(arg, func(path string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
				out = append(out, path)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(out)
	return out, nil
}

// checkCode: strict decode, SetDefaults, Validate (as on create).
func checkCode(info kindInfo, doc []byte) error {
	raw, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	obj := info.make()
	decoder := json.NewDecoder(bytes.NewReader(raw))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(obj); err != nil {
		return fmt.Errorf("strict decode: %v", err)
	}
	if _, err := decoder.Token(); err != io.EOF {
		return fmt.Errorf("strict decode: trailing data")
	}
	ctx := apis.WithinCreate(context.Background())
	obj.SetDefaults(ctx)
	if ferr := obj.Validate(ctx); ferr != nil {
		return fmt.Errorf("Validate: %v", ferr)
	}
	return nil
}

// checkSchema: the API server's schema validation and unknown-field pruning for the CRD.
func checkSchema(schema *crdSchema, doc []byte) error {
	var obj map[string]interface{}
	if err := yaml.Unmarshal(doc, &obj); err != nil {
		return err
	}
	var errs field.ErrorList
	errs = append(errs, validation.ValidateCustomResource(nil, obj, schema.validator)...)
	opts := structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}
	pruned := pruning.PruneWithOptions(obj, schema.structural, true, opts)
	for _, path := range pruned {
		errs = append(errs, field.Invalid(field.NewPath(path), "", "unknown field (pruned by the CRD schema)"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("schema %s: %v", filepath.Base(schema.file), errs.ToAggregate())
	}
	return nil
}

func run(args []string) int {
	paths, err := files(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 2
	}
	if len(paths) == 0 {
		fmt.Fprintln(os.Stderr, "error: no manifests given")
		return 2
	}
	crds := map[crdKey]*crdSchema{}
	loaded := map[string]bool{}
	failed := 0
	checked := 0
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			return 2
		}
		for _, doc := range splitYAML(data) {
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct{ Name string } `json:"metadata"`
			}
			if err := yaml.Unmarshal(doc, &head); err != nil {
				fmt.Printf("FAIL %s: %v\n", path, err)
				failed++
				continue
			}
			label := fmt.Sprintf("%s %s/%s", path, head.Kind, head.Metadata.Name)
			info, ok := kinds[head.APIVersion+"/"+head.Kind]
			if !ok {
				fmt.Printf("FAIL %s: no checker for %s %s\n", label, head.APIVersion, head.Kind)
				failed++
				continue
			}
			if !loaded[info.module] {
				if err := loadCRDs(info.module, crds); err != nil {
					fmt.Fprintf(os.Stderr, "error: loading CRDs of %s: %v\n", info.module, err)
					return 2
				}
				loaded[info.module] = true
			}
			group, version, _ := strings.Cut(head.APIVersion, "/")
			schema := crds[crdKey{group, version, head.Kind}]
			checked++
			var problems []string
			if err := checkCode(info, doc); err != nil {
				problems = append(problems, err.Error())
			}
			if schema == nil {
				problems = append(problems, fmt.Sprintf("no CRD for %s in %s config/", head.Kind, info.module))
			} else if err := checkSchema(schema, doc); err != nil {
				problems = append(problems, err.Error())
			}
			if len(problems) > 0 {
				fmt.Printf("FAIL %s: %s\n", label, strings.Join(problems, "; "))
				failed++
			} else {
				fmt.Printf("ok %s (schema %s)\n", label, filepath.Base(schema.file))
			}
		}
	}
	fmt.Printf("%d checked, %d failed\n", checked, failed)
	if failed > 0 {
		return 1
	}
	return 0
}

func main() {
	os.Exit(run(os.Args[1:]))
}
