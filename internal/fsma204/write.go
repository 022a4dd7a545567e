package fsma204

import (
	"archive/zip"
	"bytes"
	"encoding/csv"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Writer writes a spreadsheet one row at a time: the header first (on the
// first Write or on Close), then each row as given. Nothing is buffered
// beyond what the underlying encoder needs, so an export of any size runs
// in constant memory. Close finishes the file; a Writer is not safe for
// concurrent use.
type Writer interface {
	Write(r *Row) error
	Close() error
	// Rows is the number of data rows written so far.
	Rows() int
}

// Formats NewWriter knows.
const (
	FormatCSV  = "csv"
	FormatXLSX = "xlsx"
)

// ErrFormat: a format other than FormatCSV or FormatXLSX.
var ErrFormat = errors.New("fsma204: unknown format (want csv or xlsx)")

// NewWriter returns the Writer of format onto w.
func NewWriter(format string, w io.Writer) (Writer, error) {
	switch format {
	case FormatCSV:
		return NewCSV(w), nil
	case FormatXLSX:
		return NewXLSX(w), nil
	}
	return nil, fmt.Errorf("%w: %q", ErrFormat, format)
}

// csvWriter writes RFC 4180 CSV: UTF-8, CRLF line ends, a header row,
// fields quoted when they hold a comma, quote or line break.
type csvWriter struct {
	w      *csv.Writer
	header bool
	n      int
}

// NewCSV returns a Writer of RFC 4180 CSV onto w. Cells are guarded
// against formula injection (CSVCell).
func NewCSV(w io.Writer) Writer {
	c := csv.NewWriter(w)
	c.UseCRLF = true
	return &csvWriter{w: c}
}

// CSVCell is the text a cell is written as in CSV: a value starting with
// '=', '+', '-', '@', a tab or a carriage return — what a spreadsheet
// program would evaluate as a formula — gets a leading apostrophe, so
// that a scanned lot such as "=HYPERLINK(…)" shows as text and never runs.
// No value dockd produces itself starts so; only scanned text can.
func CSVCell(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

func (c *csvWriter) writeHeader() error {
	if c.header {
		return nil
	}
	c.header = true
	return c.w.Write(columns[:])
}

func (c *csvWriter) Write(r *Row) error {
	if err := c.writeHeader(); err != nil {
		return err
	}
	rec := make([]string, NumColumns)
	for i, v := range r {
		rec[i] = CSVCell(v)
	}
	if err := c.w.Write(rec); err != nil {
		return fmt.Errorf("fsma204: writing csv row %d: %w", c.n+1, err)
	}
	c.n++
	return nil
}

func (c *csvWriter) Close() error {
	if err := c.writeHeader(); err != nil {
		return err
	}
	c.w.Flush()
	if err := c.w.Error(); err != nil {
		return fmt.Errorf("fsma204: writing csv: %w", err)
	}
	return nil
}

func (c *csvWriter) Rows() int { return c.n }

// MaxXLSXRows is the most data rows one worksheet holds (Excel's limit of
// 1,048,576 rows, less the header). A larger export must be CSV or split
// by time range.
const MaxXLSXRows = 1<<20 - 1

// MaxCellChars is the longest text an XLSX cell holds.
const MaxCellChars = 32767

// ErrTooManyRows is returned by an XLSX Writer's Write past MaxXLSXRows.
var ErrTooManyRows = fmt.Errorf("fsma204: more than %d rows do not fit one worksheet (use csv or a shorter time range)", MaxXLSXRows)

// SheetName is the name of the one worksheet of an XLSX export.
const SheetName = "FSMA 204"

// xlsxWriter writes a minimal Office Open XML (ECMA-376) workbook: one
// worksheet, inline strings (no shared string table, so rows stream), the
// header row frozen and an autofilter over every column so the sheet
// sorts and filters at once.
type xlsxWriter struct {
	z     *zip.Writer
	sheet io.Writer
	n     int
	err   error
	buf   bytes.Buffer // one row batch of sheet XML; reused
}

// NewXLSX returns a Writer of an XLSX workbook onto w. Quantity and Seq
// are number cells, everything else inline text (never a formula, so no
// guard is needed). Text that XML cannot carry (control characters) is
// replaced by U+FFFD.
func NewXLSX(w io.Writer) Writer {
	return &xlsxWriter{z: zip.NewWriter(w)}
}

// colName is the column letter(s) of column index i (0 → A, 26 → AA).
func colName(i int) string {
	s := ""
	for i++; i > 0; i = (i - 1) / 26 {
		s = string(rune('A'+(i-1)%26)) + s
	}
	return s
}

func (x *xlsxWriter) start() error {
	if x.sheet != nil || x.err != nil {
		return x.err
	}
	f, err := x.z.Create("xl/worksheets/sheet1.xml")
	if err != nil {
		x.err = fmt.Errorf("fsma204: writing xlsx: %w", err)
		return x.err
	}
	x.sheet = f
	x.buf.WriteString(xml.Header)
	x.buf.WriteString(`<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">` +
		`<sheetViews><sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/></sheetView></sheetViews>` +
		`<sheetData>`)
	var hdr Row
	copy(hdr[:], columns[:])
	x.row(1, &hdr, true)
	return x.flush()
}

// row appends row number n's XML to the buffer.
func (x *xlsxWriter) row(n int, r *Row, header bool) {
	rn := strconv.Itoa(n)
	x.buf.WriteString(`<row r="` + rn + `">`)
	for i, v := range r {
		if v == "" {
			continue
		}
		ref := colName(i) + rn
		if !header && numeric(i) && isNumber(v) {
			x.buf.WriteString(`<c r="` + ref + `"><v>` + v + `</v></c>`)
			continue
		}
		x.buf.WriteString(`<c r="` + ref + `" t="inlineStr"><is><t xml:space="preserve">`)
		_ = xml.EscapeText(&x.buf, []byte(v)) // a bytes.Buffer never fails
		x.buf.WriteString(`</t></is></c>`)
	}
	x.buf.WriteString(`</row>`)
}

func isNumber(v string) bool {
	_, err := strconv.ParseFloat(v, 64)
	return err == nil && strings.Trim(v, "0123456789.") == ""
}

func (x *xlsxWriter) flush() error {
	if x.buf.Len() < 32<<10 && x.err == nil {
		return nil
	}
	return x.flushNow()
}

func (x *xlsxWriter) flushNow() error {
	if x.err != nil {
		return x.err
	}
	if _, err := x.sheet.Write(x.buf.Bytes()); err != nil {
		x.err = fmt.Errorf("fsma204: writing xlsx: %w", err)
	}
	x.buf.Reset()
	return x.err
}

func (x *xlsxWriter) Write(r *Row) error {
	if err := x.start(); err != nil {
		return err
	}
	if x.n >= MaxXLSXRows {
		return ErrTooManyRows
	}
	for i, v := range r {
		if len(v) > MaxCellChars && utf8.RuneCountInString(v) > MaxCellChars {
			return fmt.Errorf("fsma204: row %d column %q: %d characters, an XLSX cell holds %d", x.n+1, columns[i], utf8.RuneCountInString(v), MaxCellChars)
		}
	}
	x.n++
	x.row(x.n+1, r, false)
	return x.flush()
}

func (x *xlsxWriter) Rows() int { return x.n }

func (x *xlsxWriter) Close() error {
	if err := x.start(); err != nil {
		return err
	}
	last := colName(NumColumns-1) + strconv.Itoa(x.n+1)
	x.buf.WriteString(`</sheetData><autoFilter ref="A1:` + last + `"/></worksheet>`)
	if err := x.flushNow(); err != nil {
		return err
	}
	abs := "$A$1:$" + colName(NumColumns-1) + "$" + strconv.Itoa(x.n+1)
	parts := []struct{ name, body string }{
		{"[Content_Types].xml", `<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">` +
			`<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>` +
			`<Default Extension="xml" ContentType="application/xml"/>` +
			`<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>` +
			`<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>` +
			`</Types>`},
		{"_rels/.rels", `<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">` +
			`<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>` +
			`</Relationships>`},
		{"xl/workbook.xml", `<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">` +
			`<sheets><sheet name="` + SheetName + `" sheetId="1" r:id="rId1"/></sheets>` +
			`<definedNames><definedName name="_xlnm._FilterDatabase" localSheetId="0" hidden="1">'` + SheetName + `'!` + abs + `</definedName></definedNames>` +
			`</workbook>`},
		{"xl/_rels/workbook.xml.rels", `<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">` +
			`<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>` +
			`</Relationships>`},
	}
	for _, p := range parts {
		f, err := x.z.Create(p.name)
		if err == nil {
			_, err = io.WriteString(f, xml.Header+p.body)
		}
		if err != nil {
			return fmt.Errorf("fsma204: writing xlsx %s: %w", p.name, err)
		}
	}
	if err := x.z.Close(); err != nil {
		return fmt.Errorf("fsma204: writing xlsx: %w", err)
	}
	return nil
}
