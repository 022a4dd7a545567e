// Package fsma204test reads back the XLSX workbooks package fsma204
// writes, independently of the writer: it opens the zip, follows the
// package relationships to the first worksheet and returns its cells.
package fsma204test

import (
	"archive/zip"
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"path"
	"strings"
)

// Sheet is one worksheet read back: its name, its rows of cell text (a
// missing cell is ""), which cells were numbers, and its autofilter range.
type Sheet struct {
	Name       string
	Rows       [][]string
	Numeric    map[string]bool // cell references holding a number
	AutoFilter string
	Frozen     bool // the first row is a frozen pane
}

type rels struct {
	Rel []struct {
		ID     string `xml:"Id,attr"`
		Type   string `xml:"Type,attr"`
		Target string `xml:"Target,attr"`
	} `xml:"Relationship"`
}

// ReadXLSX parses the workbook b and returns its first worksheet.
func ReadXLSX(b []byte) (*Sheet, error) {
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, fmt.Errorf("xlsx: not a zip: %w", err)
	}
	files := map[string]*zip.File{}
	for _, f := range zr.File {
		files[f.Name] = f
	}
	read := func(name string, v any) error {
		f := files[name]
		if f == nil {
			return fmt.Errorf("xlsx: no part %s", name)
		}
		rc, err := f.Open()
		if err != nil {
			return err
		}
		defer rc.Close()
		data, err := io.ReadAll(rc)
		if err != nil {
			return err
		}
		if err := xml.Unmarshal(data, v); err != nil {
			return fmt.Errorf("xlsx: %s: %w", name, err)
		}
		return nil
	}
	var ct struct {
		Override []struct {
			PartName    string `xml:"PartName,attr"`
			ContentType string `xml:"ContentType,attr"`
		} `xml:"Override"`
	}
	if err := read("[Content_Types].xml", &ct); err != nil {
		return nil, err
	}
	var root rels
	if err := read("_rels/.rels", &root); err != nil {
		return nil, err
	}
	wbPath := ""
	for _, r := range root.Rel {
		if strings.HasSuffix(r.Type, "/officeDocument") {
			wbPath = strings.TrimPrefix(r.Target, "/")
		}
	}
	var wb struct {
		Sheets []struct {
			Name string `xml:"name,attr"`
			RID  string `xml:"http://schemas.openxmlformats.org/officeDocument/2006/relationships id,attr"`
		} `xml:"sheets>sheet"`
	}
	if err := read(wbPath, &wb); err != nil {
		return nil, err
	}
	if len(wb.Sheets) == 0 {
		return nil, fmt.Errorf("xlsx: workbook has no sheets")
	}
	var wbRels rels
	if err := read(path.Join(path.Dir(wbPath), "_rels", path.Base(wbPath)+".rels"), &wbRels); err != nil {
		return nil, err
	}
	sheetPath := ""
	for _, r := range wbRels.Rel {
		if r.ID == wb.Sheets[0].RID {
			sheetPath = path.Join(path.Dir(wbPath), r.Target)
		}
	}
	typed := false
	for _, o := range ct.Override {
		if strings.TrimPrefix(o.PartName, "/") == sheetPath && strings.HasSuffix(o.ContentType, "worksheet+xml") {
			typed = true
		}
	}
	if !typed {
		return nil, fmt.Errorf("xlsx: %s has no worksheet content type", sheetPath)
	}
	var ws struct {
		Pane struct {
			YSplit string `xml:"ySplit,attr"`
			State  string `xml:"state,attr"`
		} `xml:"sheetViews>sheetView>pane"`
		Rows []struct {
			R     int `xml:"r,attr"`
			Cells []struct {
				R  string `xml:"r,attr"`
				T  string `xml:"t,attr"`
				V  string `xml:"v"`
				IS struct {
					T string `xml:"t"`
				} `xml:"is"`
			} `xml:"c"`
		} `xml:"sheetData>row"`
		AutoFilter struct {
			Ref string `xml:"ref,attr"`
		} `xml:"autoFilter"`
	}
	if err := read(sheetPath, &ws); err != nil {
		return nil, err
	}
	s := &Sheet{Name: wb.Sheets[0].Name, Numeric: map[string]bool{}, AutoFilter: ws.AutoFilter.Ref,
		Frozen: ws.Pane.YSplit == "1" && ws.Pane.State == "frozen"}
	for i, r := range ws.Rows {
		if r.R != i+1 {
			return nil, fmt.Errorf("xlsx: row %d numbered %d", i+1, r.R)
		}
		var row []string
		for _, c := range r.Cells {
			col := colIndex(c.R)
			if col < len(row) || col < 0 {
				return nil, fmt.Errorf("xlsx: cell %s out of order", c.R)
			}
			for len(row) < col {
				row = append(row, "")
			}
			switch c.T {
			case "inlineStr":
				row = append(row, c.IS.T)
			case "":
				s.Numeric[c.R] = true
				row = append(row, c.V)
			default:
				return nil, fmt.Errorf("xlsx: cell %s has type %q", c.R, c.T)
			}
		}
		s.Rows = append(s.Rows, row)
	}
	return s, nil
}

// colIndex is the 0-based column of a cell reference such as "AB12".
func colIndex(ref string) int {
	n := 0
	for _, c := range ref {
		if c < 'A' || c > 'Z' {
			break
		}
		n = n*26 + int(c-'A'+1)
	}
	return n - 1
}
