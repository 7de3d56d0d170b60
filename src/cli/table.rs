//! Plain aligned tables for terminals, like `kubectl get`.

/// Render rows under a header, columns padded to the widest cell.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    render_fitted(header, rows, &[])
}

/// Render rows under a header, cutting cells of column `i` to `max[i]` characters (0, or a
/// column past the end of `max`: no limit). A cut cell ends in `…`, so a reader knows there
/// is more (`-o wide` shows it whole).
pub fn render_fitted(header: &[&str], rows: &[Vec<String>], max: &[usize]) -> String {
    let limit = |i: usize| max.get(i).copied().filter(|m| *m > 0);
    let rows: Vec<Vec<String>> =
        rows.iter().map(|row| row.iter().enumerate().map(|(i, cell)| cut(cell, limit(i))).collect()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            text.push_str(cell);
            if i < last {
                text.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn cut(cell: &str, max: Option<usize>) -> String {
    match max {
        Some(m) if cell.chars().count() > m => {
            let mut s: String = cell.chars().take(m.saturating_sub(1)).collect();
            s.push('…');
            s
        }
        _ => cell.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align() {
        let t = super::render(&["NAME", "AGE"], &[vec!["a".into(), "1".into()], vec!["long-name".into(), "22".into()]]);
        assert_eq!(t, "NAME        AGE\na           1\nlong-name   22\n");
    }

    #[test]
    fn long_cells_are_cut_with_a_mark() {
        let rows = [vec!["abcdefghij".into(), "x".into()], vec!["abc".into(), String::new()]];
        let t = super::render_fitted(&["COL", "B"], &rows, &[6]);
        assert_eq!(t, "COL      B\nabcde…   x\nabc\n");
    }
}
