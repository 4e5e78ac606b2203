package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/rootkeeper/rootkeeper/ceremony"
	"github.com/rootkeeper/rootkeeper/hsm"
)

func (a *app) keyCommand() *cobra.Command {
	cmd := groupCommand(&cobra.Command{
		Use:   "key",
		Short: "Generate, show and list keys inside hardware",
	})
	cmd.AddCommand(a.keyGenerateCommand(), a.keyShowCommand(), a.keyListCommand(), a.keyExportCommand()) // bundle.go
	return cmd
}

func (a *app) keyGenerateCommand() *cobra.Command {
	var alg, pinPolicy, touchPolicy string
	var overwrite, asJSON bool
	cmd := &cobra.Command{
		Use:   "generate URI",
		Short: "Generate a key pair inside a token or YubiKey",
		Long: `Generate a key pair inside the device named by URI. The private key is created
non-extractable and never leaves the device. The label, id or slot must be free.

Prints the TUF key id, the public key and the device's evidence that the key
was born in hardware.`,
		Example: `  rootkeeper key generate 'pkcs11:token=root-a;object=root?pin-source=/run/officer-a.pin' --algorithm ecdsa-p256`,
		Args:    exactArgs(1, "one key URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			algorithm, err := hsm.ParseAlgorithm(alg)
			if err != nil {
				return usageError{err}
			}
			kr := hsm.NewKeyring(a.hsmOptions())
			defer kr.Close()
			info, err := kr.Generate(cmd.Context(), args[0], hsm.GenerateOptions{Algorithm: algorithm, PINPolicy: pinPolicy, TouchPolicy: touchPolicy, Overwrite: overwrite})
			if err != nil {
				return err
			}
			v, err := ceremony.DescribeKey(*info)
			if err != nil {
				return err
			}
			return a.showKey(v, asJSON)
		},
	}
	cmd.Flags().StringVar(&alg, "algorithm", string(hsm.ECDSAP256), "key algorithm: ecdsa-p256, ecdsa-p384, ed25519, rsa-3072 or rsa-4096")
	cmd.Flags().StringVar(&pinPolicy, "pin-policy", "", "YubiKey PIN policy: always or once (default always)")
	cmd.Flags().StringVar(&touchPolicy, "touch-policy", "", "YubiKey touch policy: always, cached or never (default always)")
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "replace the key in an occupied YubiKey slot")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) keyShowCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show URI",
		Short: "Show a key's public key, TUF key id and hardware evidence",
		Args:  exactArgs(1, "one key URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s := a.session()
			defer s.Close()
			v, err := s.ShowKey(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.showKey(v, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) keyListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list TOKEN-URI",
		Short: "List the keys in a token or YubiKey",
		Args:  exactArgs(1, "one token URI"),
		RunE: func(cmd *cobra.Command, args []string) error {
			kr := hsm.NewKeyring(a.hsmOptions())
			defer kr.Close()
			infos, err := kr.List(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			views := []*ceremony.KeyView{}
			for _, info := range infos {
				v, err := ceremony.DescribeKey(info)
				if err != nil {
					a.ui.printf("warning: %v", err)
					continue
				}
				views = append(views, v)
			}
			if asJSON {
				return a.printJSON(struct {
					Keys []*ceremony.KeyView `json:"keys"`
				}{views})
			}
			if len(views) == 0 {
				fmt.Fprintln(a.stdout, "no keys")
			}
			for i, v := range views {
				if i > 0 {
					fmt.Fprintln(a.stdout)
				}
				a.printKey(v, false)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) showKey(v *ceremony.KeyView, asJSON bool) error {
	for _, w := range v.Warnings {
		a.ui.printf("warning: %s", w)
	}
	if asJSON {
		return a.printJSON(v)
	}
	a.printKey(v, true)
	return nil
}

func (a *app) printKey(v *ceremony.KeyView, withPEM bool) {
	fmt.Fprintf(a.stdout, "uri:        %s\n", v.URI)
	fmt.Fprintf(a.stdout, "keyid:      %s\n", v.KeyID)
	fmt.Fprintf(a.stdout, "algorithm:  %s (%s)\n", v.Algorithm, v.Scheme)
	fmt.Fprintf(a.stdout, "evidence:   %s\n", v.Evidence.Summary())
	if withPEM {
		fmt.Fprint(a.stdout, strings.TrimSpace(v.PublicKey)+"\n")
	}
}
